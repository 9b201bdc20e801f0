"""Alert service: users' rules under RLS, evaluation of new whale transactions, delivery."""

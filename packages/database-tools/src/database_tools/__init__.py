"""Developer and operator tools for the database: the `database` command, the embedded server,
the Supabase-compatibility bootstrap, advisors, the pytest plugin, identities and factories."""

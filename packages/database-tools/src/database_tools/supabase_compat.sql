-- Supabase-compatibility bootstrap for plain PostgreSQL (embedded, Debian, CI).
--
-- Gives a vanilla database the parts of a Supabase database that our schema and tests rely on:
-- the API roles, a minimal auth schema with auth.uid()/role()/email()/jwt() defined exactly as
-- Supabase defines them, the extensions schema, the supabase_realtime publication, and the
-- grants and settings a new Supabase project has today (since 2026 tables are no longer
-- granted to anon/authenticated automatically). Sources: shared/reference/supabase-facts.md §2
-- (supabase/postgres init-scripts and migrations, supabase/auth migrations).
--
-- Idempotent: every statement is guarded or naturally repeatable, so running it twice changes
-- nothing. It refuses to touch a real Supabase database (those have supabase_admin).

do $guard$
begin
  if exists (select from pg_roles where rolname in ('supabase_admin', 'supabase_auth_admin')) then
    raise exception 'refusing to apply the Supabase-compatibility bootstrap'
      using detail = 'This database has the supabase_admin role: it is a real Supabase database, '
                     'which already has roles, auth and grants of its own.',
            hint = 'Only run the bootstrap on plain PostgreSQL (embedded, Debian, CI).',
            errcode = 'SBREF';
  end if;
end
$guard$;

-- Roles (cluster-wide). Created as Supabase's init script does, then switched to INHERIT as
-- its 2023-05-29 migration does.
do $roles$
begin
  if not exists (select from pg_roles where rolname = 'anon') then
    create role anon nologin noinherit;
  end if;
  if not exists (select from pg_roles where rolname = 'authenticated') then
    create role authenticated nologin noinherit;
  end if;
  if not exists (select from pg_roles where rolname = 'service_role') then
    create role service_role nologin noinherit bypassrls;
  end if;
  if not exists (select from pg_roles where rolname = 'authenticator') then
    create role authenticator login noinherit;
  end if;
  -- Our apps' API login role (DATABASE_API_URL; README "API login role"): like PostgREST's
  -- authenticator it can only switch to anon or authenticated, never to the owner or
  -- service_role, so an injected `reset role` lands on a role with no privileges at all.
  if not exists (select from pg_roles where rolname = 'crypto_api') then
    create role crypto_api login noinherit;
  end if;
end
$roles$;

alter role anon inherit;
alter role authenticated inherit;
alter role service_role inherit;
alter role anon set statement_timeout = '3s';
alter role authenticated set statement_timeout = '8s';
alter role authenticator set statement_timeout = '8s';
alter role authenticator set lock_timeout = '8s';
alter role crypto_api set statement_timeout = '8s';

do $membership$
begin
  -- authenticator switches into the API roles (PostgREST); the migration owner may too
  -- (Supabase grants them to postgres). Granting only what is missing keeps reruns silent.
  if not pg_has_role('authenticator', 'anon', 'member') then
    grant anon to authenticator;
  end if;
  if not pg_has_role('authenticator', 'authenticated', 'member') then
    grant authenticated to authenticator;
  end if;
  if not pg_has_role('authenticator', 'service_role', 'member') then
    grant service_role to authenticator;
  end if;
  if not pg_has_role('crypto_api', 'anon', 'member') then
    grant anon to crypto_api;
  end if;
  if not pg_has_role('crypto_api', 'authenticated', 'member') then
    grant authenticated to crypto_api;
  end if;
  if not (select rolsuper from pg_roles where rolname = current_user) then
    if not pg_has_role(current_user, 'anon', 'member') then
      execute format('grant anon to %I', current_user);
    end if;
    if not pg_has_role(current_user, 'authenticated', 'member') then
      execute format('grant authenticated to %I', current_user);
    end if;
    if not pg_has_role(current_user, 'service_role', 'member') then
      execute format('grant service_role to %I', current_user);
    end if;
  end if;
end
$membership$;

-- Schemas and grants (per database).
create schema if not exists extensions;
grant usage on schema extensions to anon, authenticated, service_role;
grant usage on schema public to anon, authenticated, service_role;

do $ext$
begin
  -- Supabase installs these in `extensions`; builds without contrib (the embedded wheel) skip
  -- them, gen_random_uuid() is built into PostgreSQL 13+ anyway.
  if exists (select from pg_available_extensions where name = 'pgcrypto') then
    create extension if not exists pgcrypto with schema extensions;
  end if;
  if exists (select from pg_available_extensions where name = 'uuid-ossp') then
    create extension if not exists "uuid-ossp" with schema extensions;
  end if;
  -- Query statistics, as on every Supabase project (`database inspect outliers/calls/slow`).
  -- Its view only answers when the server preloads the library (shared_preload_libraries);
  -- the inspect verbs say so when it does not.
  if exists (select from pg_available_extensions where name = 'pg_stat_statements') then
    create extension if not exists pg_stat_statements with schema extensions;
  end if;
  -- Time partitions are maintained by pg_partman where the server has it (Supabase, Debian's
  -- postgresql-15-partman), in the schema Supabase's guide uses; elsewhere `database maintain`.
  if exists (select from pg_available_extensions where name = 'pg_partman') then
    create schema if not exists partman;
    create extension if not exists pg_partman with schema partman;
  end if;
end
$ext$;

-- New tables, sequences and functions in public are granted to service_role only; anon and
-- authenticated get exactly what a migration grants them (Supabase's 2026 behaviour).
alter default privileges in schema public grant all on tables to service_role;
alter default privileges in schema public grant all on sequences to service_role;
alter default privileges in schema public grant all on functions to service_role;

-- auth: a minimal users table (the columns the test helpers and our foreign keys need) and the
-- four helper functions, verbatim from supabase/auth.
create schema if not exists auth;
grant usage on schema auth to anon, authenticated, service_role;

create table if not exists auth.users (
  instance_id uuid,
  id uuid not null primary key,
  aud varchar(255),
  role varchar(255),
  email varchar(255) unique,
  phone text unique,
  encrypted_password varchar(255),
  email_confirmed_at timestamptz,
  raw_app_meta_data jsonb,
  raw_user_meta_data jsonb,
  is_anonymous boolean not null default false,
  created_at timestamptz default now(),
  updated_at timestamptz default now()
);
grant select on auth.users to service_role;

create or replace function auth.uid() returns uuid language sql stable as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim.sub', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')
  )::uuid
$$;

create or replace function auth.role() returns text language sql stable as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim.role', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role')
  )::text
$$;

create or replace function auth.email() returns text language sql stable as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim.email', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'email')
  )::text
$$;

create or replace function auth.jwt() returns jsonb language sql stable as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim', true), ''),
    nullif(current_setting('request.jwt.claims', true), '')
  )::jsonb
$$;

comment on function auth.uid() is 'Deprecated. Use auth.jwt() -> ''sub'' instead.';
comment on function auth.role() is 'Deprecated. Use auth.jwt() -> ''role'' instead.';
comment on function auth.email() is 'Deprecated. Use auth.jwt() -> ''email'' instead.';

-- Realtime publishes the tables added to this publication; it starts empty.
do $pub$
begin
  if not exists (select from pg_publication where pubname = 'supabase_realtime') then
    create publication supabase_realtime;
  end if;
end
$pub$;

-- Database settings: the search path Supabase gives, and the schemas the Data API exposes
-- (the advisors read pgrst.db_schemas to know which tables are reachable).
do $settings$
begin
  execute format('alter database %I set search_path to "$user", public, extensions',
                 current_database());
  execute format('alter database %I set pgrst.db_schemas to %L',
                 current_database(), 'public,graphql_public');
end
$settings$;

comment on schema auth is 'Supabase-compatibility bootstrap (database.bootstrap): not a real Supabase auth schema';

-- Visits target schema (spec §4), applied idempotently by ensure_schema.
-- Names in braces are identifiers (the time zone a literal) composed by psycopg.sql, never by string formatting.
CREATE SCHEMA IF NOT EXISTS {schema};

CREATE TABLE IF NOT EXISTS {schema}.{load_log} (
  load_id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  file_name TEXT NOT NULL,
  file_size BIGINT NOT NULL,
  sha256 CHAR(64) NOT NULL,
  remote_mtime TIMESTAMPTZ,
  encoding TEXT,
  column2_header TEXT,
  -- GIVEN_UP: not loaded on purpose (param give_up_files), quarantined with the operator's reason.
  -- An older table gets GIVEN_UP admitted by VisitsStore.ensure_schema.
  status TEXT NOT NULL CHECK (status IN ('LOADED','COMPLETED','REJECTED','QUARANTINED','FAILED','DUPLICATE','GIVEN_UP')),
  reason TEXT,
  rows_read INTEGER NOT NULL DEFAULT 0,
  rows_loaded INTEGER NOT NULL DEFAULT 0,
  rows_rejected INTEGER NOT NULL DEFAULT 0,
  visits_loaded INTEGER NOT NULL DEFAULT 0,
  reference_date DATE,
  dag_id TEXT NOT NULL,
  dag_run_id TEXT NOT NULL,
  started_at TIMESTAMPTZ NOT NULL,
  committed_at TIMESTAMPTZ,
  archive_name TEXT,
  archived_at TIMESTAMPTZ,
  source_deleted_at TIMESTAMPTZ,
  finished_at TIMESTAMPTZ,
  CHECK (rows_read = rows_loaded + rows_rejected)
);
CREATE UNIQUE INDEX IF NOT EXISTS {load_log_file_once} ON {schema}.{load_log} (file_name, sha256)
  WHERE status IN ('LOADED','COMPLETED','REJECTED','QUARANTINED');

CREATE TABLE IF NOT EXISTS {schema}.{statistics} (
  statistics_id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  load_id BIGINT NOT NULL REFERENCES {schema}.{load_log} (load_id),
  source_file TEXT NOT NULL,
  line_number INTEGER NOT NULL,
  email VARCHAR(254) NOT NULL,
  jyv TEXT,
  badmail BOOLEAN NOT NULL,
  baja BOOLEAN NOT NULL,
  fecha_envio TIMESTAMP,
  fecha_open TIMESTAMP,
  opens INTEGER,
  opens_virales INTEGER,
  fecha_click TIMESTAMP,
  clicks INTEGER,
  clicks_virales INTEGER,
  links TEXT,
  ips TEXT,
  navegadores TEXT,
  plataformas TEXT,
  UNIQUE (load_id, line_number)
);
CREATE INDEX IF NOT EXISTS {statistics_email_open} ON {schema}.{statistics} (email, fecha_open);
CREATE INDEX IF NOT EXISTS {statistics_open} ON {schema}.{statistics} (fecha_open);

CREATE TABLE IF NOT EXISTS {schema}.{errors} (
  error_id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  load_id BIGINT NOT NULL REFERENCES {schema}.{load_log} (load_id),
  source_file TEXT NOT NULL,
  line_number INTEGER NOT NULL,
  raw_line TEXT NOT NULL,
  rule TEXT NOT NULL,
  message TEXT NOT NULL,
  created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  UNIQUE (load_id, line_number)
);

CREATE TABLE IF NOT EXISTS {schema}.{visitor} (
  email VARCHAR(254) PRIMARY KEY,
  fechaPrimeraVisita DATE NOT NULL,
  fechaUltimaVisita DATE NOT NULL,
  visitasTotales INTEGER NOT NULL,
  visitasAnioActual INTEGER NOT NULL,
  visitasMesActual INTEGER NOT NULL,
  CHECK (fechaPrimeraVisita <= fechaUltimaVisita),
  CHECK (visitasTotales >= 1),
  CHECK (0 <= visitasMesActual AND visitasMesActual <= visitasAnioActual AND visitasAnioActual <= visitasTotales)
);

CREATE OR REPLACE VIEW {schema}.{visitor_report} AS
SELECT email,
       to_char(fechaPrimeraVisita, 'YYYYMMDD') AS fechaPrimeraVisita,
       to_char(fechaUltimaVisita, 'YYYYMMDD') AS fechaUltimaVisita,
       visitasTotales, visitasAnioActual, visitasMesActual
FROM {schema}.{visitor};

-- Monthly report of files and rows; months in the configured timezone.
CREATE OR REPLACE VIEW {schema}.{monthly} AS
SELECT date_trunc('month', coalesce(committed_at, started_at) AT TIME ZONE {tz})::date AS month,
       count(*) FILTER (WHERE status IN ('LOADED','COMPLETED')) AS files_loaded,
       count(*) FILTER (WHERE status IN ('REJECTED','QUARANTINED')) AS files_rejected,
       count(*) FILTER (WHERE status = 'DUPLICATE') AS files_duplicate,
       count(*) FILTER (WHERE status = 'FAILED') AS failed,
       sum(rows_read) AS rows_read,
       sum(rows_loaded) AS rows_loaded,
       sum(rows_rejected) AS rows_rejected,
       count(*) FILTER (WHERE status = 'GIVEN_UP') AS files_given_up
FROM {schema}.{load_log}
GROUP BY 1;

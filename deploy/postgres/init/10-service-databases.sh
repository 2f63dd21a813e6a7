#!/bin/bash
# One database and one login per service, each owning only its own database (run once, on the
# first start of an empty PostgreSQL, by the official image and by localhost/dcsp-postgres).
#   DCSP_DATABASES=intake,triage,notifications,panels
#   <NAME>_DB_PASSWORD   that service's password (INTAKE_DB_PASSWORD, ...)
set -euo pipefail
for name in ${DCSP_DATABASES//,/ }; do
  pw_var="${name^^}_DB_PASSWORD"
  pw=${!pw_var:?"$pw_var is required for database $name"}
  psql -v ON_ERROR_STOP=1 -q -U "$POSTGRES_USER" -d "$POSTGRES_DB" -v name="$name" -v pw="$pw" <<'SQL'
CREATE ROLE :"name" LOGIN PASSWORD :'pw';
CREATE DATABASE :"name" OWNER :"name";
REVOKE ALL ON DATABASE :"name" FROM PUBLIC;
SQL
  echo "dcsp: database and user $name created"
done

#!/usr/bin/env bash
# One role and one database per ModelFleet service, owned by that role: a service can reach only its
# own schema. Runs once, when the postgres container initialises an empty data directory; passwords
# come from FLEET_<SERVICE>_DB_PASSWORD (docker-compose.yml passes them from .env).
set -euo pipefail

for service in registry deployer monitor retrainer; do
    variable="FLEET_${service^^}_DB_PASSWORD"
    password="${!variable:?${variable} is not set}"
    # psql variables quote the name and the password, so no value is spliced into SQL text.
    psql --no-psqlrc -v ON_ERROR_STOP=1 --username "${POSTGRES_USER:-postgres}" --dbname postgres \
        -v name="${service}" -v password="${password}" <<'SQL'
CREATE ROLE :"name" LOGIN PASSWORD :'password';
CREATE DATABASE :"name" OWNER :"name";
REVOKE ALL ON DATABASE :"name" FROM PUBLIC;
SQL
done

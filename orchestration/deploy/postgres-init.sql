-- compose.yaml's PostgreSQL: the Dagster instance's database is POSTGRES_DB (dagster); the
-- warehouse gets one of its own (the ERP is the company's, reached by TRUEUP_ERP_URL).
CREATE DATABASE warehouse;

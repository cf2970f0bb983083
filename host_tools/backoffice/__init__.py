"""The operator's back office: the tap store (`store`), ingest of Wi-Fi batches (`ingest`; the wire
format is card_schema/upload.py), its HTTP server (`server`) and the report queries (`report`).
Library only: report returns data, the CLI renders it."""

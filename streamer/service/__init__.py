"""The pipeline service: ingest, scan assembly, processing in a worker, publication; the cluster reconstructor; the service configuration."""

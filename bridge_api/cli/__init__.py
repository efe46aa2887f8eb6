"""Console scripts: `wf-admin` (admin.py) and `wf-credits` (credits.py)."""

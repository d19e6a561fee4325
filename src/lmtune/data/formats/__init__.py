"""Reading and validating records: sources (files, saved datasets, packaged aliases), the record formats
and their checks, with rejects kept."""

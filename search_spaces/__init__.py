"""Search spaces shipped with automl (YAML files, package data)."""

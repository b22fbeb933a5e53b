"""The dashboard's pages, grouped by resource."""

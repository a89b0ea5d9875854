"""Figures and the HTML report of a results folder: reads tables, writes files (the edge)."""

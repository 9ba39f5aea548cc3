"""Reference data of labinterp, shipped as package data (see README.md in this folder)."""

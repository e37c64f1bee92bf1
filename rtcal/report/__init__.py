"""Figures and reports drawn from results files (matplotlib, imported only here)."""

"""Analysis of finished or running experiments, from plain files (pandas, scipy,
matplotlib; no Ray): `results` reads Tune's trial folders into one table, `metrics` computes
the paper's measures from it, `figures` draws them and `report` writes tables, figures and
one HTML page."""

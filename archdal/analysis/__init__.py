"""Analysis of finished or running experiments, from plain files (pandas, scipy,
scikit-posthocs, matplotlib; no Ray): `results` reads Tune's trial folders into one table,
`metrics` computes the paper's measures from it, `stats` says how sure they are (intervals,
Friedman and post-hoc rankings, the architecture × strategy interaction, seeds needed),
`figures` draws them and `report` writes tables, figures and one HTML page."""

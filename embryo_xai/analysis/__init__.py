"""The study's analysis (paper §4; docs/architecture.md, The report), one module per concern.

spec (metric directions, groups, approach order) · loading (runs -> Study) · tables (Table 1)
· ranking (Table 2) · kendall (tau-b, tau distance) · embedding (t-SNE, UMAP) · bootstrap
· gallery (Fig. 5 data) · figures · document (report.md / report.html). Entry point:
`python -m embryo_xai.report`.
"""

"""The study's analysis (paper §4; docs/architecture.md, The report), one module per concern.

spec (labels, directions, groups from the registrations; approach order) · loading (runs -> Study)
· published (a Table-1 CSV -> Study) · tables (Table 1) · ranking (Table 2) · kendall (tau-b, tau
distance) · embedding (t-SNE, UMAP) · bootstrap · agreement (map agreement) · gallery (Fig. 5 data)
· figures · document (report.md / report.html) · writer (ReportWriter: tables, figures, W&B)
· sections/ (one ``section(study, writer, cfg)`` per analysis; `embryo_xai.report` lists them).
Entry point: `python -m embryo_xai.report`.
"""

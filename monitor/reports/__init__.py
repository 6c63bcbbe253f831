"""Reports made from the store: the monthly SLA report (sla.py computes, render.py writes md, csv, html)."""

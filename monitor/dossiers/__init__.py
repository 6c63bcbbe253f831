"""Open dossiers against their due dates: sources' config, the model, sync, the deadline engine, storage,
metrics and the service that wires them.

Kept empty of imports: probes/sources imports `monitor.dossiers.model`, and this package's `config`
imports probes/sources, so re-exporting here would tie the two into a cycle.
"""

"""upkeep: the recurring work of IT maintenance contracts, as Prefect 3 flows.

One import name. The design's top-level directories are its subpackages, layered one way
(the import-linter contract in pyproject.toml keeps it so), from the bottom:

- ``upkeep.settings``, ``upkeep.db``: typed settings, engines and sessions
- ``upkeep.models``: the tables (``models/``)
- ``upkeep.domain``: pure decisions, the typed contract, cadences and calendars
- ``upkeep.tasks``: adapters (SSH, mail, backup tools, reports, record stores) and thin
  ``@task``s (``tasks/``)
- ``upkeep.flows``: the processes (``flows/``)
- ``upkeep.deployments``: flows onto Prefect schedules and work pools (``deployments/``)
- ``upkeep.inventory``, ``upkeep.approvals_cli``, ``upkeep.console``, ``upkeep.demo``,
  ``upkeep.cli``: the commands
"""

from upkeep import compat as _compat

_compat.install()

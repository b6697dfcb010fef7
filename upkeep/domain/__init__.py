"""Pure domain: cadences, calendars, the processes a contract runs, the typed contract and
the decisions made on them. Below the tasks and flows; imports only models, settings and
libraries."""

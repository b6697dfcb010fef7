"""Backup-restore verification: take, restore into scratch space, check, decide retention.

``base`` holds the verdict types and scratch handling, ``files`` (tar + SHA-256 manifest),
``postgresql`` (pg_dump custom format) and ``restic`` the three kinds, ``retention`` the pure
pruning and archive-layout rules.
"""

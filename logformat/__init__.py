"""The trajectory log format (mcap_log.py): MCAP files with the schemas of log.proto, a
writer and a damage-tolerant reader; below serve (records) and replay (reads).

May import v1 only.
"""

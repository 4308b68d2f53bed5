"""The ``bookjob`` commands: :mod:`.app` owns the app; each other module registers commands on it."""

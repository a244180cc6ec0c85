"""Scenarios: the field language, loader, runner, recorder, importer, replay command and pytest plugin.

May use ``api`` and ``wire``; never ``live``.
"""

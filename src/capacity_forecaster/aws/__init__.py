"""AWS deployment: Athena/Glue catalog, SageMaker stage jobs, Lambda + EventBridge schedule, QuickSight.

Optional (the ``aws`` extra); boto3 is imported lazily. This package imports nothing on purpose:
the Lambda bundle carries only the modules the handler needs (see ``bundle.py``).
"""

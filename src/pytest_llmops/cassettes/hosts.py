"""The placeholder hosts cassettes are scrubbed to (and replay's environment points at):
constants only, so that replay's set-up needs none of the scrubbing code."""

OPENAI_HOST = "resource.openai.azure.com"
DATABRICKS_HOST = "adb-0000000000000000.0.azuredatabricks.net"
ARM_HOST = "management.azure.com"
LOGIN_HOST = "login.microsoftonline.com"
LOCAL_HOST = "localhost"

"""Azure Databricks: the workspace client, the lab's cluster, commands run on it, and the
sweeper of leaked clusters. databricks-sdk is imported only inside these modules' functions
and fixtures, never when the plugin loads."""

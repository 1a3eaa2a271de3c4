"""Azure OpenAI deployments (attach or provision), clients and credentials."""

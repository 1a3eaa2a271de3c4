"""Lab steps 1 and 2: an Azure OpenAI resource (kind OpenAI, Standard S0, in one of the
lab's four regions) and its gpt-4o deployment (Standard, default version, 10K tokens per
minute, default content filter, dynamic quota off).

With ``--llmops-provision`` (and AZURE_SUBSCRIPTION_ID, AZURE_RESOURCE_GROUP) the
``azure_openai_deployment`` fixture creates both and deletes them after the session;
otherwise it attaches to AZURE_OPENAI_ENDPOINT. Replay does what the recording did.
"""

LAB_REGIONS = {"eastus2", "northcentralus", "swedencentral", "switzerlandwest"}


def test_the_deployment_is_the_labs(azure_openai_deployment):
    deployment = azure_openai_deployment
    assert deployment.deployment == "gpt-4o"
    assert deployment.model == "gpt-4o"
    assert deployment.api_version == "2024-05-01-preview"
    assert deployment.endpoint.startswith("https://") or deployment.endpoint.startswith("http://127.")
    if deployment.provisioned:
        assert deployment.region in LAB_REGIONS
        assert deployment.sku == "Standard"
        assert deployment.capacity == 10
        assert deployment.tokens_per_minute == 10_000
        assert deployment.model_version  # the model's default version, chosen at creation


def test_the_deployment_answers(azure_openai_client, azure_openai_deployment):
    reply = azure_openai_client.chat.completions.create(
        model=azure_openai_deployment.deployment,
        messages=[{"role": "user", "content": "Say hello to the LLMOps lab."}],
    )
    choice = reply.choices[0]
    assert reply.model.startswith("gpt-4o")
    assert choice.finish_reason == "stop"
    assert choice.message.role == "assistant"
    assert len(choice.message.content.split()) >= 3
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens

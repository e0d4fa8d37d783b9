"""The OpenAI Agents SDK through Mantlet: the SDK calls /v1/responses, which
Mantlet serves over any chat upstream, guarded both ways, tool calls
included. Checked by hand with openai-agents 0.24.0 (not a dependency):

    pip install openai-agents
    MANTLET_KEY=mk-... python examples/openai_agents_sdk.py
"""

import os

from agents import Agent, OpenAIResponsesModel, Runner, function_tool, set_tracing_disabled
from openai import AsyncOpenAI

set_tracing_disabled(True)  # traces would go to OpenAI, around the gateway
client = AsyncOpenAI(api_key=os.environ["MANTLET_KEY"], base_url="http://127.0.0.1:8080/v1")


@function_tool
def get_weather(city: str) -> str:
    """Weather for a city."""
    return f"sunny in {city}"


agent = Agent(
    name="assistant",
    instructions="Use the tools when asked about the weather.",
    tools=[get_weather],
    model=OpenAIResponsesModel(
        model=os.environ.get("MANTLET_MODEL", "smollm2"), openai_client=client
    ),
)
print(Runner.run_sync(agent, "What is the weather in Cobh?").final_output)

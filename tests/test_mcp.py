"""With --mcp, the same endpoints are MCP tools (Gradio's built-in MCP server)."""

import asyncio

import pytest

from model_utils.settings import parse_settings

pytestmark = pytest.mark.slow  # a live server, a browser or a subprocess


async def _session(url, action):
    from mcp import ClientSession
    from mcp.client.streamable_http import streamablehttp_client

    async with streamablehttp_client(f"{url}/gradio_api/mcp/") as (read, write, _):
        async with ClientSession(read, write) as session:
            await session.initialize()
            return await action(session)


def test_mcp_lists_and_calls_the_tools(demo_mcp_url):
    assert parse_settings(["--mcp"], environ={}).mcp
    assert parse_settings([], environ={"PYTHIA_MCP": "1"}).mcp
    url = demo_mcp_url  # `python app.py --demo --mcp`, shared with test_page_words.py (conftest)
    tools = asyncio.run(_session(url, lambda s: s.list_tools())).tools
    by_name = {t.name: t for t in tools}
    assert {"chat", "complete", "models"} <= set(by_name)
    assert {"message", "history", "model", "revision", "temperature", "max_new_tokens"} <= set(
        by_name["chat"].inputSchema["properties"])
    result = asyncio.run(_session(url, lambda s: s.call_tool(
        "complete", {"prompt": "Once upon a time", "model": "demo-pythia-kjv", "max_new_tokens": 8})))
    assert not result.isError
    assert result.content and result.content[0].text

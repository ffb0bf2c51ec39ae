"""What push_client is as a package: its imports, its types."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_import_needs_only_requests() -> None:
    """``import push_client`` loads neither aiohttp nor the server nor the web app; naming AsyncPushClient loads aiohttp."""
    code = textwrap.dedent(
        """
        import sys, push_client
        loaded = {name.split(".")[0] for name in sys.modules}
        assert not loaded & {"aiohttp", "push_server", "web_app", "flask", "h11"}, loaded
        push_client.AsyncPushClient
        assert "aiohttp" in sys.modules
        """
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)


def test_faces_and_batches_are_typed_for_what_they_return(tmp_path: Path) -> None:
    """mypy sees PushClient's results, AsyncPushClient's coroutines and both batches' BatchResults with their value types."""
    from mypy import api

    usage = tmp_path / "usage.py"
    usage.write_text(
        textwrap.dedent(
            """
            from typing import Any, Coroutine, assert_type
            from push_client import AsyncPushClient, BatchResult, Node, PushClient

            def sync(push: PushClient) -> None:
                assert_type(push.is_online("c"), bool)
                assert_type(push.get_uid_by_client_id("c"), str | None)
                assert_type(push.get_nodes(), list[Node])
                assert_type(push.send_to_uid(1, "m", idempotency_key="k"), None)
                with push.batch(idempotency_key="k") as batch:
                    assert_type(batch.is_online("c"), BatchResult[bool])
                    assert_type(batch.get_session("c"), BatchResult[dict[str, Any] | None])
                    assert_type(batch.get_client_count_by_group("g"), BatchResult[int])
                    assert_type(batch.send_to_all("m"), None)
                assert_type(batch.is_online("c").value, bool)

            async def asynchronous(push: AsyncPushClient) -> None:
                online = assert_type(push.is_online("c"), Coroutine[Any, Any, bool])
                assert_type(await online, bool)
                assert_type(await push.get_all_uid_list(), list[str])
                assert_type(await push.send_to_group("g", "m"), None)
                async with push.batch() as batch:
                    assert_type(batch.get_uid_count_by_group("g"), BatchResult[int])
            """
        )
    )
    out, err, status = api.run(["--strict", "--no-incremental", "--python-version", "3.11", str(usage)])
    assert status == 0, out + err

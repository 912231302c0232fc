# The Eventline binaries in one image: `eventline` (the CLI: setup, schemas, operator tools)
# and one binary per service. Built by docker-compose.yml.
FROM rust:1.95-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends cmake && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bins && \
    mkdir /out && find target/release -maxdepth 1 -type f -executable -name 'eventline*' -exec cp {} /out/ \;

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/* && \
    useradd --system --uid 10001 eventline
COPY --from=build /out/ /usr/local/bin/
USER eventline
ENV EVENTLINE_TELEMETRY__FORMAT=json
ENTRYPOINT ["eventline"]

# Build the single lakeward binary, then ship it on a slim Debian.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked && cp target/release/lakeward /usr/local/bin/lakeward

FROM debian:bookworm-slim
COPY --from=build /usr/local/bin/lakeward /usr/local/bin/lakeward
COPY dags /opt/lakeward/dags
WORKDIR /opt/lakeward
ENV LAKEWARD_DAGS_FOLDER=/opt/lakeward/dags LAKEWARD_HOME=/var/lib/lakeward
CMD ["lakeward", "standalone"]

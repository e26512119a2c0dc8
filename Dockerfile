# The Portcullis gateway image: `docker build -t portcullis .`
# Run: docker run -v $PWD/conf/config.yaml:/etc/portcullis/config.yaml portcullis

FROM rust:1-bookworm AS build
WORKDIR /src
# The build's system packages come from the same script a laptop runs
# (protoc with its well-known .proto files, for etcd-client's build script),
# in a layer of its own so that a source change does not install them again.
COPY scripts/deps scripts/deps
RUN ./scripts/deps build && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cargo build --release -p portcullis \
    && cp target/release/gateway /usr/local/bin/gateway

FROM debian:bookworm-slim
# /var/lib/portcullis holds deployment.etcd.cache_dir; a volume mounted there
# starts out owned by the gateway's user.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --no-create-home portcullis \
    && install -d -o portcullis -g portcullis -m 0700 /var/lib/portcullis
COPY --from=build /usr/local/bin/gateway /usr/local/bin/gateway
COPY conf/config.yaml /etc/portcullis/config.yaml
USER portcullis
EXPOSE 9080 9443 9180
ENTRYPOINT ["/usr/local/bin/gateway"]
CMD ["-c", "/etc/portcullis/config.yaml"]

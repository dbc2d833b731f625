# secretdrop: a static binary alone in distroless/static, running as nonroot.
# The build stage runs the same script the tests run (scripts/build-static.sh).
FROM rust:1-bookworm AS build
WORKDIR /src
# musl-tools is only the build-time C compiler for ring; the Debian release pins its version.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/*
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY scripts ./scripts
RUN scripts/build-static.sh

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /src/target/static/secretdrop /secretdrop
USER 65532:65532
ENTRYPOINT ["/secretdrop"]
CMD ["help"]

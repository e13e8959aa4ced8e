# A static (musl) gocacheprog-s3 in an otherwise empty image. Use it as a stage to copy
# the binary into a Go build image:
#   COPY --from=gocacheprog-s3 /gocacheprog-s3 /usr/local/bin/gocacheprog-s3
#   ENV GOCACHEPROG="/usr/local/bin/gocacheprog-s3 my-bucket"
FROM rust:1-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends musl-tools \
    && rm -rf /var/lib/apt/lists/* \
    && rustup target add x86_64-unknown-linux-musl
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
RUN cargo build --release --locked --target x86_64-unknown-linux-musl

FROM scratch
COPY --from=build /src/target/x86_64-unknown-linux-musl/release/gocacheprog-s3 /gocacheprog-s3
ENTRYPOINT ["/gocacheprog-s3"]

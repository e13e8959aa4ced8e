# Images around one static (musl) gocacheprog-s3. Every step here is one of the
# repository's scripts or a plain COPY, so what Docker does is tested without Docker:
#
#   docker build --target static -t gocacheprog-s3 .      # FROM scratch: the binary only,
#                                                         # built from source (x86_64)
#   docker build --target golang -t golang-cached .       # golang with GOCACHEPROG preset
#
# The published image (ghcr.io, linux/amd64 and linux/arm64) is the `release` stage: the
# binaries of the release archives (scripts/dist.sh), built and checked by scripts/image.sh
# with buildah, which passes a context holding linux/<arch>/gocacheprog-s3.
#
# The scratch image is meant as a stage to copy from:
#   COPY --from=gocacheprog-s3 /gocacheprog-s3 /usr/local/bin/gocacheprog-s3
# The golang image needs only the bucket (and credentials) at run time:
#   docker run -e GOCACHEPROG_S3_BUCKET=my-bucket -e AWS_REGION=eu-west-1 ... golang-cached go build ./...
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY tests ./tests
COPY scripts ./scripts
RUN scripts/build-static.sh > /tmp/binary-path && cp "$(cat /tmp/binary-path)" /gocacheprog-s3

FROM golang:1-bookworm AS golang
COPY --from=build /gocacheprog-s3 /usr/local/bin/gocacheprog-s3
# A local-only cache until GOCACHEPROG_S3_BUCKET (or the BUCKET argument) names a bucket.
ENV GOCACHEPROG=/usr/local/bin/gocacheprog-s3

FROM scratch AS release
ARG TARGETARCH
ARG VERSION
LABEL org.opencontainers.image.title=gocacheprog-s3 \
      org.opencontainers.image.description="A Go build cache program (GOCACHEPROG) backed by S3" \
      org.opencontainers.image.licenses=Apache-2.0 \
      org.opencontainers.image.version=${VERSION}
COPY --chmod=0755 linux/${TARGETARCH}/gocacheprog-s3 /gocacheprog-s3
ENTRYPOINT ["/gocacheprog-s3"]

FROM scratch AS static
COPY --from=build /gocacheprog-s3 /gocacheprog-s3
ENTRYPOINT ["/gocacheprog-s3"]

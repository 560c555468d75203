# For users who have Docker. The project itself builds the same images without Docker (make images ->
# hack/images.sh): one static binary at /usr/local/bin, uid 65532, no shell.
#   docker build --target lastcall-webhook -t ghcr.io/lastcall-dev/lastcall-webhook:v0.1.0-dev .
#   docker build --target lastcall-shim    -t ghcr.io/lastcall-dev/lastcall-shim:v0.1.0-dev .
ARG GO_VERSION=1.26
FROM golang:${GO_VERSION} AS build
ARG VERSION=v0.1.0-dev
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# The webhook's main package is cmd/webhook; its binary is named lastcall-webhook.
RUN CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X github.com/lastcall-dev/lastcall/pkg/version.Version=${VERSION}" \
      -o /out/lastcall-webhook ./cmd/webhook && \
    CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X github.com/lastcall-dev/lastcall/pkg/version.Version=${VERSION}" \
      -o /out/ ./cmd/lastcall-shim

FROM scratch AS lastcall-shim
# The injected init container runs /usr/local/bin/lastcall-shim install /lastcall/bin.
COPY --from=build /out/lastcall-shim /usr/local/bin/lastcall-shim
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/lastcall-shim"]

FROM scratch AS lastcall-webhook
COPY --from=build /out/lastcall-webhook /usr/local/bin/lastcall-webhook
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/lastcall-webhook"]

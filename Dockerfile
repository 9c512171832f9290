# The one image every deployment in k8s/ runs: `boxoffice serve <service>`.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p boxoffice --locked

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/boxoffice /usr/local/bin/boxoffice
USER 65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/boxoffice"]
CMD ["up", "--no-demo-data"]

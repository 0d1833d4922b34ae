# NATS with JetStream for the API server's queue on NATS (docker-compose.nats.yml), with no
# registry: FROM scratch with the host's Debian `nats-server` and the two C library files it
# links (deploy/build-images.sh stages them: `ldd $(command -v nats-server)`).
FROM scratch
LABEL org.opencontainers.image.title="minifaas nats"
COPY --chown=65534:65534 . /
USER 65534:65534
ENV LD_LIBRARY_PATH=/lib/x86_64-linux-gnu
# JetStream on, its file store on the volume at /data, clients on 4222.
ENTRYPOINT ["/nats-server"]
CMD ["-js", "-sd", "/data", "-p", "4222"]

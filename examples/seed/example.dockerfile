# The bundled example built by `cargo run --example basic` with no arguments.
FROM busybox:1.36
COPY hello.txt /hello.txt
CMD ["cat", "/hello.txt"]

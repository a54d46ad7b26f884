//! Prints the `ImageBuild` CustomResourceDefinition as YAML, as `kaniko-builder-controller crd`
//! does: `cargo run -p kaniko-builder-controller --example crd | kubectl apply -f -`.

#[allow(clippy::print_stdout)] // printing the CRD is this example's job
fn main() -> anyhow::Result<()> {
    print!("{}", kaniko_builder_controller::install::crd_yaml()?);
    Ok(())
}

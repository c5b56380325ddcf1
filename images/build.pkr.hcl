# One build for all three sources: the same scripts bake the same runtime everywhere.
# Cloud builds install from the network; the qemu build gets its wheels and .debs uploaded
# (offline_dir) because its guest has no network.

build {
  sources = [
    "source.amazon-ebs.runner",
    "source.googlecompute.runner",
    "source.qemu.runner",
  ]

  # the file provisioner uploads a folder's contents ("dir/") only into an existing folder
  provisioner "shell" {
    inline = ["mkdir -p /tmp/runner-scripts /tmp/runner-offline"]
  }

  provisioner "file" {
    source      = "${path.root}/scripts/"
    destination = "/tmp/runner-scripts"
  }

  provisioner "file" {
    only        = ["qemu.runner"]
    source      = "${var.offline_dir}/"
    destination = "/tmp/runner-offline"
  }

  provisioner "shell" {
    execute_command = "chmod +x {{ .Path }}; sudo env {{ .Vars }} {{ .Path }}"
    environment_vars = [
      "OFFLINE_DIR=/tmp/runner-offline",
      "RUNNER_SCRIPTS=/tmp/runner-scripts",
      "AWSCLI=${var.awscli}",
    ]
    scripts = [
      "${path.root}/scripts/10-wait-cloud-init.sh",
      "${path.root}/scripts/20-os-packages.sh",
      "${path.root}/scripts/30-python-venv.sh",
      "${path.root}/scripts/40-transfer-tools.sh",
      "${path.root}/scripts/50-ray.sh",
    ]
  }

  # local images boot their own kernel directly: bring it out next to the qcow2
  provisioner "shell" {
    only            = ["qemu.runner"]
    execute_command = "chmod +x {{ .Path }}; sudo env {{ .Vars }} {{ .Path }}"
    script          = "${path.root}/scripts/80-export-boot-files.sh"
  }

  provisioner "file" {
    only        = ["qemu.runner"]
    direction   = "download"
    source      = "/tmp/runner-boot/vmlinuz"
    destination = "${var.qemu_output_dir}/vmlinuz"
  }

  provisioner "file" {
    only        = ["qemu.runner"]
    direction   = "download"
    source      = "/tmp/runner-boot/initrd.img"
    destination = "${var.qemu_output_dir}/initrd.img"
  }

  provisioner "shell" {
    execute_command = "chmod +x {{ .Path }}; sudo env {{ .Vars }} {{ .Path }}"
    environment_vars = [
      "OFFLINE_DIR=/tmp/runner-offline",
      "RUNNER_SCRIPTS=/tmp/runner-scripts",
    ]
    script = "${path.root}/scripts/90-cleanup.sh"
  }

  post-processor "manifest" {
    output     = var.manifest_path
    strip_path = false
    custom_data = {
      image_name     = local.image_name
      kernel_cmdline = local.kernel_cmdline
      gcp_project    = var.gcp_project_id # the project that owns a googlecompute image: the launcher looks it up there
    }
  }
}

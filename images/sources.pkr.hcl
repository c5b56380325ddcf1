# The three places the runner image is baked. One build (build.pkr.hcl) provisions them all.

# AWS: the newest official Debian 12 AMI (owner 136693071363 = Debian), ssh user "admin".
source "amazon-ebs" "runner" {
  region          = var.aws_region
  instance_type   = var.aws_instance_type
  subnet_id       = var.aws_subnet_id
  ami_name        = local.image_name
  ami_description = "runner batch image: Debian 12, Python data stack, Ray, s5cmd, AWS CLI, gsutil, mdadm"
  ena_support     = true

  source_ami_filter {
    filters = {
      name                = "debian-12-amd64-*"
      architecture        = "x86_64"
      virtualization-type = "hvm"
      root-device-type    = "ebs"
    }
    owners      = ["136693071363"]
    most_recent = true
  }

  launch_block_device_mappings {
    device_name           = "/dev/xvda"
    volume_size           = var.disk_size_gb
    volume_type           = "gp3"
    iops                  = 3000
    throughput            = 125
    delete_on_termination = true
  }

  ssh_username  = "admin"
  tags          = local.image_tags
  snapshot_tags = local.image_tags
  run_tags      = { "runner-image-build" = local.image_name }
}

# GCP: the newest Debian 12 image (family debian-12 in project debian-cloud).
source "googlecompute" "runner" {
  project_id              = var.gcp_project_id
  zone                    = var.gcp_zone
  machine_type            = var.gcp_machine_type
  source_image_family     = "debian-12"
  source_image_project_id = ["debian-cloud"]
  image_name              = local.image_name
  image_family            = var.image_family
  image_description       = "runner batch image: Debian 12, Python data stack, Ray, s5cmd, AWS CLI, gsutil, mdadm"
  image_labels            = { "runner-image" = "1" }
  disk_size               = var.disk_size_gb
  ssh_username            = "packer"
}

# Local: the offline base qcow2 (images/local/build-base.sh), booted directly (no bootloader),
# with a NoCloud seed that creates the ssh user "packer". The guest gets NO network:
# restricted user networking, ssh forwarded on 127.0.0.1 only.
source "qemu" "runner" {
  iso_url          = "file://${var.qemu_base_dir}/base.qcow2"
  iso_checksum     = "none"
  disk_image       = true
  use_backing_file = false
  skip_resize_disk = true
  format           = "qcow2"
  disk_interface   = "virtio"
  disk_discard     = "unmap"
  disk_compression = var.qemu_disk_compression
  net_device       = "virtio-net"
  accelerator      = var.qemu_accelerator
  headless         = true
  vnc_bind_address = "127.0.0.1"
  memory           = 2048
  cpus             = 2
  output_directory = var.qemu_output_dir
  vm_name          = "${local.image_name}.qcow2"

  cd_files = ["${var.qemu_work_dir}/cidata/user-data", "${var.qemu_work_dir}/cidata/meta-data"]
  cd_label = "cidata"

  # -netdev replaces Packer's default NIC (unrestricted, forwards on 0.0.0.0)
  qemuargs = [
    ["-cpu", var.qemu_cpu],
    ["-kernel", "${var.qemu_base_dir}/vmlinuz"],
    ["-initrd", "${var.qemu_base_dir}/initrd.img"],
    ["-append", local.kernel_cmdline],
    ["-serial", "file:${var.qemu_work_dir}/serial.log"],
    ["-netdev", "user,id=user.0,restrict=on,hostfwd=tcp:127.0.0.1:{{ .SSHHostPort }}-:22"],
  ]

  communicator         = "ssh"
  ssh_username         = "packer"
  ssh_private_key_file = "${var.qemu_work_dir}/id_ed25519"
  ssh_timeout          = "20m"
  # the build user goes last: its session runs this very command
  shutdown_command = "sudo sh -c 'userdel -f -r packer; rm -f /etc/sudoers.d/90-cloud-init-users; shutdown -P now'"
  shutdown_timeout = "5m"
}

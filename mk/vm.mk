# Kernel tests on other kernels (docs/vm.md).  Included by the top Makefile.
#
#   make vm-test        every kernel of vm/kernels.conf, the whole kernel suite in each
#   make vm-test-ci     the kernels marked ci=yes (Debian 6.1), a chosen part of the suite
#   make vm-cache       download + unpack the kernels into .cache/vm (no guest booted)
#   make vagrant-test   the Vagrant machines (needs Vagrant and its boxes)
#   make vagrant-check  check vagrant/Vagrantfile without Vagrant (ruby)

VM_PY ?= /usr/bin/python3
VM_MATRIX = $(VM_PY) vm/matrix.py
# Guests at a time for vm-test: each guest's work is mostly one thread (BCC's compile).
VM_JOBS ?= 2
# Seconds a guest may take for the whole suite under software emulation.
VM_TEST_TIMEOUT ?= 7200
# The part of the kernel suite the CI guest runs (pytest -k).  Under software
# emulation one recording takes ~35 s with BCC and ~80-140 s with bpftrace (the
# host: 2 s), so CI keeps the BCC tests that read the kernel's structures (ids,
# exit status, pgid, sid, argv, the --fds descriptor table) and the test that
# records the same tree with both backends.  `make vm-test` runs the whole suite.
VM_CI_TESTS ?= ((ids_match or exit_status_and_tree or setpgid or setsid or argv_is_exact or fds_pair) and bcc) or cross_backend or warm_start_records_what_a_cold
VM_ARGS ?=

.PHONY: vm-provision vm-cache vm-test vm-test-ci vagrant-test vagrant-check

vm-provision:
	vm/provision.sh --matrix-host

vm-cache: vm-provision
	$(VM_MATRIX) cache

vm-test: vm-provision
	$(VM_MATRIX) run --jobs $(VM_JOBS) --timeout $(VM_TEST_TIMEOUT) $(VM_ARGS)

vm-test-ci: vm-provision
	$(VM_MATRIX) run --ci --pytest-arg=-k --pytest-arg="$(VM_CI_TESTS)" $(VM_ARGS)

vagrant-test:
	vm/vagrant-test.sh

vagrant-check:
	@command -v ruby >/dev/null || vm/provision.sh --packages ruby
	ruby -c vagrant/Vagrantfile >/dev/null
	ruby vm/vagrant_check.rb vagrant/Vagrantfile
	for f in vm/provision.sh vm/vagrant-test.sh; do bash -n $$f || exit 1; done
	@if command -v vagrant >/dev/null; then cd vagrant && vagrant validate; fi

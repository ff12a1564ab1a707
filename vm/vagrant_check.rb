# Check vagrant/Vagrantfile without Vagrant or boxes (used by `make vagrant-check`).
#
# `ruby -c` proves the syntax only; this also evaluates the file against a
# stand-in for Vagrant's configuration DSL that records every call, then checks
# what matters here: the machines and boxes, and that each machine is
# provisioned by the one shared script vm/provision.sh with the project mounted.
#
#   ruby vm/vagrant_check.rb vagrant/Vagrantfile

# Records calls like config.vm.box = "x" or config.vm.provision "shell", path: p.
class Recorder
  attr_reader :calls, :children

  def initialize(path = [])
    @path = path
    @calls = []
    @children = {}
  end

  def method_missing(name, *args, **kwargs, &block)
    if name.to_s.end_with?("=")
      @calls << [(@path + [name.to_s.chomp("=")]).join("."), args.first]
      return args.first
    end
    if args.empty? && kwargs.empty? && block.nil?
      return @children[name] ||= Recorder.new(@path + [name.to_s])
    end
    @calls << [(@path + [name.to_s]).join("."), args, kwargs]
    if block
      child = Recorder.new(@path + [name.to_s, args.first.to_s])
      (@children[[name, args.first]] = child)
      block.call(child)
    end
    nil
  end

  def respond_to_missing?(*)
    true
  end

  def all_calls
    @calls + @children.values.flat_map(&:all_calls)
  end

  # The recorder of the block given to a call `name(arg) do ... end`, at any depth.
  def block_of(name, arg)
    return @children[[name, arg]] if @children.key?([name, arg])

    @children.each_value do |c|
      found = c.block_of(name, arg)
      return found if found
    end
    nil
  end
end

module Vagrant
  @configs = []
  class << self
    attr_reader :configs

    def configure(version)
      raise "Vagrant.configure(#{version.inspect}): want \"2\"" unless version == "2"

      config = Recorder.new(["config"])
      yield config
      @configs << config
    end

    def require_version(*) = nil
  end
end

def fail!(msg)
  warn "vagrant-check: #{msg}"
  exit 1
end

file = File.expand_path(ARGV.fetch(0, "vagrant/Vagrantfile"))
begin
  eval(File.read(file), binding, file) # rubocop:disable Security/Eval
rescue StandardError, ScriptError => e
  fail!("#{file}: #{e.class}: #{e.message}")
end
fail!("#{file}: no Vagrant.configure block") if Vagrant.configs.empty?

root = Vagrant.configs.first
defines = root.all_calls.select { |c| c[0] == "config.vm.define" }.map { |c| c[1].first }
fail!("no machines defined") if defines.empty?

project = File.expand_path("..", File.dirname(file))
shared = File.join(project, "vm", "provision.sh")
folders = root.all_calls.select { |c| c[0].end_with?("vm.synced_folder") }
mounted = folders.any? { |c| File.expand_path(c[1][0].to_s) == project && !c[2][:disabled] }
fail!("the project folder #{project} is not mounted in the machines") unless mounted

wanted = %w[ubuntu2204 ubuntu2404 debian12]
missing = wanted - defines
fail!("missing machines: #{missing.join(', ')}") unless missing.empty?

defines.each do |name|
  machine = root.block_of(:define, name) or fail!("#{name}: no configuration block")
  calls = machine.all_calls
  box = calls.find { |c| c[0].end_with?("vm.box") }
  fail!("#{name}: no box") unless box && box[1].is_a?(String) && !box[1].empty?
  prov = calls.select { |c| c[0].end_with?("vm.provision") }
  shell = prov.find { |c| c[1].first.to_s == "shell" }
  fail!("#{name}: no shell provisioner") unless shell
  path = File.expand_path(shell[2][:path].to_s, File.dirname(file))
  fail!("#{name}: provisions with #{path}, not #{shared}") unless path == shared
  fail!("#{name}: #{shared} is missing") unless File.file?(shared)
  puts "vagrant-check: #{name}: box #{box[1]}, provisioned by vm/provision.sh"
end
puts "vagrant-check: #{file}: #{defines.size} machines ok"

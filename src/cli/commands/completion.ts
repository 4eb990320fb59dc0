import type { Command } from 'commander';

/** Names and options of every command (and subcommand), read from the program itself. */
function describeCommands(program: Command): { name: string; words: string[] }[] {
  const longOptions = (c: Command) => c.options.map((o) => o.long).filter((l): l is string => Boolean(l));
  return program.commands
    .filter((c) => c.name() !== 'help')
    .map((c) => ({
      name: c.name(),
      words: [...c.commands.map((s) => s.name()), ...longOptions(c), ...c.commands.flatMap(longOptions)],
    }));
}

const quote = (words: string[]) => [...new Set(words)].sort().join(' ');

/** A bash completion script for es and beckett: commands, subcommands and long options. */
export function bashCompletion(program: Command): string {
  const commands = describeCommands(program);
  const globals = quote(program.options.map((o) => o.long ?? '').filter(Boolean));
  return `# es / beckett completion for bash. Load it with: source <(npx es completion bash)
_es_complete() {
  local cur="\${COMP_WORDS[COMP_CWORD]}" cmd="" i
  for ((i = 1; i < COMP_CWORD; i++)); do
    case "\${COMP_WORDS[i]}" in -*) ;; *) cmd="\${COMP_WORDS[i]}"; break ;; esac
  done
  local words
  case "$cmd" in
    "") words="${quote(commands.map((c) => c.name))} ${globals}" ;;
${commands.map((c) => `    ${c.name}) words="${quote(c.words)} ${globals}" ;;`).join('\n')}
    *) words="${globals}" ;;
  esac
  COMPREPLY=($(compgen -W "$words" -- "$cur"))
}
complete -o default -F _es_complete es beckett
`;
}

/** The zsh script: zsh runs the bash one through bashcompinit. */
export function zshCompletion(program: Command): string {
  return `# es / beckett completion for zsh. Load it with: source <(npx es completion zsh)
autoload -U +X compinit && compinit
autoload -U +X bashcompinit && bashcompinit
${bashCompletion(program).split('\n').slice(1).join('\n')}`;
}

export function registerCompletion(program: Command): void {
  program
    .command('completion')
    .argument('<shell>', 'bash or zsh')
    .description('print a shell completion script for es and beckett (commands and options)')
    .addHelpText(
      'after',
      `
Examples:
  $ source <(npx es completion bash)                 this shell only
  $ npx es completion bash >> ~/.bashrc               every new bash
  $ npx es completion zsh > ~/.es-completion.zsh && echo 'source ~/.es-completion.zsh' >> ~/.zshrc`,
    )
    .action(async (shell: string) => {
      if (shell !== 'bash' && shell !== 'zsh') {
        const { InvalidInputError } = await import('../../errors.js');
        throw new InvalidInputError(`es completion takes bash or zsh, got "${shell.slice(0, 20)}".`);
      }
      // The running program holds only stubs for the other commands (they load lazily): describe
      // one with every command loaded.
      const { buildProgram } = await import('../main.js');
      const full = await buildProgram(['node', 'es'], true);
      process.stdout.write(shell === 'bash' ? bashCompletion(full) : zshCompletion(full));
    });
}

# tn.bash - bash completion for every tn-* program. Subcommands and long
# options are read from the program's own --help, so they never go stale.
_tn_complete()
{
	local cur prog sub words
	cur=${COMP_WORDS[COMP_CWORD]}
	prog=${COMP_WORDS[0]}
	local help
	help=$("$prog" --help 2>/dev/null) || return
	# Subcommands: the indented first words of the "Commands:" section.
	local subs
	subs=$(printf '%s\n' "$help" | sed -n '/^Commands:/,/^$/{s/^  \([a-z][a-z0-9-]*\).*/\1/p}')
	if [ "$COMP_CWORD" -eq 1 ] && [ -n "$subs" ] && [[ $cur != -* ]]; then
		mapfile -t COMPREPLY < <(compgen -W "$subs" -- "$cur")
		return
	fi
	sub=${COMP_WORDS[1]}
	if [[ $cur == -* ]]; then
		if [ -n "$subs" ] && [[ " $subs " == *" $sub "* ]]; then
			local sub_help
			sub_help=$("$prog" "$sub" --help 2>/dev/null) && help=$sub_help
		fi
		words=$(printf '%s\n' "$help" | grep -oE -- '--[a-z0-9][a-z0-9-]*' | sort -u)
		mapfile -t COMPREPLY < <(compgen -W "$words" -- "$cur")
		return
	fi
	mapfile -t COMPREPLY < <(compgen -f -- "$cur")
	compopt -o filenames 2>/dev/null
}
complete -F _tn_complete tn-tokenize tn-shard tn-train tn-eval tn-generate tn-convert tn-bench

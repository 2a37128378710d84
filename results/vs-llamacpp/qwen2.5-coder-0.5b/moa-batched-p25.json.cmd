build/cli/moa bench decode -m /root/.cache/moa/Qwen2.5-Coder-0.5B-Instruct.Q4_K_M.gguf --context 8192 --tokens 32 -r 2 --warmup 1 --kv-budget 1610612736 --uniform 0.25 --kv-type f16 --format json

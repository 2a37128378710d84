build/cli/moa bench decode -m /root/.cache/moa/Qwen2.5-Coder-0.5B-Instruct.Q4_K_M.gguf --context 0 --tokens 128 -r 2 --warmup 1 --uniform 0.5 --kv-type f16 --format json

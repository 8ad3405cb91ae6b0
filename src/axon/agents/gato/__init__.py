"""A Gato-style generalist decoder (Reed et al. 2022, "A Generalist Agent"), at research size.

    env A (continuous obs) --scripted expert--> episodes --+
    env B (continuous obs) --scripted expert--> episodes --+--tokens--> one stream per task --+
    env C (a maze, ints)   --scripted expert--> episodes --+                                  |
    bundled corpus (chars) -----------------------------------------tokens------------------+
                                                                                             v
              windows of block_size+1 tokens --decoder--> logits --CE on action and text tokens only
                                                                                             |
    evaluation: [a held-out expert episode of the task | the episode so far] --greedy, masked to the
                valid action tokens--> action --env.step--> next observation --> ... --> return

The vocabulary (:mod:`axon.agents.gato.tokens`, Gato sec. 2.1):

    [0, T)               text: the bundled corpus's characters (T = 65)
    [T, T + 1024)        values: a continuous value mu-law encoded (mu=100, M=256), clipped to
                         [-1, 1] and put in one of 1024 uniform bins; a discrete value (an action,
                         a maze cell's row) as the integer itself
    T + 1024             '|', the separator between a timestep's observation and its action

A timestep is ``[obs tokens, '|', action tokens]``; an episode is its timesteps in order; a task's
episodes are concatenated into one stream, so a window that crosses an episode's start holds the
end of another expert episode before it -- the layout of evaluation's prompt.

Modules: ``tokens`` (mu-law, bins, the layout and the loss mask; numpy only), ``envs`` (the three
environments and their scripted experts; gymnasium imported lazily), ``data`` (collection into
an npz file, the datasets of windows), ``policy`` (prompted greedy rollouts, returns, GIFs). The
task is ``axon.tasks.gato``; docs/gato.md has the measurements.
"""

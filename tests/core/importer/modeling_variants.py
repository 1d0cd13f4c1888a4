"""Modeling files in the shape of InternVL's ``modeling_internvl_chat.py``, written for the reader's tests.

The release's own file is not public; these follow InternVL's published structure (an
``InternVLChatModel`` with ``chat()``-like methods, ``IMG_*_TOKEN`` constants, a conversation template)
plus the heads the paper describes, with every open field settable. `PAYLOADS` plants code that would
leave a file behind if anything imported or executed the file.
"""

from __future__ import annotations

from string import Template

from humanaes_core.model.prompts import INTERNVL_SYSTEM_MESSAGE, SWIFT_SYSTEM_MESSAGE

MODELING = Template("""\
# --------------------------------------------------------
# InternVL-shaped model with the HumanAesExpert heads (test fixture)
# --------------------------------------------------------
import os
import warnings

import torch
import torch.nn.functional as F
from torch import nn
from transformers.modeling_utils import PreTrainedModel

from .configuration_internvl_chat import InternVLChatConfig
from .conversation import get_conv_template

IMG_START_TOKEN = '<img>'
IMG_END_TOKEN = '</img>'
IMG_CONTEXT_TOKEN = '<IMG_CONTEXT>'
IM_END_TOKEN = '<|im_end|>'
SYSTEM_MESSAGE = $system
ANSWER_PREFIX = 'The aesthetics of the human image is'
LEVELS = $levels
$payload_module


class FFN(nn.Module):
    def __init__(self, n_in, hidden=64):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(n_in, hidden), nn.$ffn_act(), nn.Linear(hidden, 1))

    def forward(self, x):
        return self.net(x)


class ExpertHead(nn.Module):
    def __init__(self, hidden_size):
        super().__init__()
        self.expert_head1 = nn.Linear(hidden_size, 9)
        self.expert_head2 = FFN(5)
        self.expert_head3 = FFN(3)
        self.expert_head4 = FFN(3)

    $decorator
    def forward(self, h$default_arg):
        x = $leaves
        facial = $facial
        general = $general
        env = $env
        overall = $overall
        return torch.cat([x[:, 0:5], facial, $ghi, env, general, overall], dim=-1)


class InternVLChatModel(PreTrainedModel):
    config_class = InternVLChatConfig

    def __init__(self, config, vision_model=None, language_model=None):
        super().__init__(config)
        hidden = config.llm_config.hidden_size
        self.template = config.template
        self.num_image_token = 256
        self.lm_regression_head = $regression
        self.expert_head = ExpertHead(hidden)
        self.metavoter = nn.Sequential(nn.Linear(3, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 1))
        path = os.path.join(config._name_or_path, 'metavoter.pth')
        self.metavoter.load_state_dict(torch.load(path, map_location='cpu'))

    def build_query(self, question, num_patches):
        template = get_conv_template(self.template)
        template.system_message = SYSTEM_MESSAGE
        template.append_message(template.roles[0], question)
        template.append_message(template.roles[1], None)
        query = template.get_prompt()
        image_tokens = IMG_START_TOKEN + IMG_CONTEXT_TOKEN * self.num_image_token * num_patches
        image_tokens = image_tokens + IMG_END_TOKEN$img_newline
        return query.replace('<image>', image_tokens, 1)

    def run_language_model(self, tokenizer, pixel_values, query):
        model_inputs = tokenizer(query, return_tensors='pt')
        input_ids = model_inputs['input_ids'].to(self.device)
        input_embeds = self.embed_with_image(pixel_values, input_ids)
        return self.language_model(inputs_embeds=input_embeds, output_hidden_states=True, return_dict=True)

    def score(self, tokenizer, pixel_values):
        question = $question
        query = self.build_query(question, pixel_values.shape[0])
        outputs = self.run_language_model(tokenizer, pixel_values, query + ANSWER_PREFIX)
$reg_read
        level_ids = tokenizer.convert_tokens_to_ids(LEVELS)
        logits = outputs.logits[:, -1, level_ids]
        probs = torch.softmax(logits.float(), dim=-1)
        s_lm = (probs * torch.arange(1, 6, device=probs.device)).sum(-1)
        s_lm_norm = $lm_norm
        s_reg = $reg_call
        return s_lm_norm, s_reg

    def expert_score(self, tokenizer, pixel_values):
        question = '<image>\\nRate the aesthetics of this human picture from 12 different dimensions.'
        query = self.build_query(question, pixel_values.shape[0])
$exp_read
        return self.expert_head(hidden)

    def run_metavoter(self, tokenizer, pixel_values):
        s_lm_norm, s_reg = self.score(tokenizer, pixel_values)
        s_exp = self.expert_score(tokenizer, pixel_values)[:, -1]
        x = torch.stack($voter_inputs, dim=1)
        return self.metavoter(x)
""")

DEFAULT = {
    "system": repr(INTERNVL_SYSTEM_MESSAGE),
    "levels": repr([" bad", " poor", " fair", " good", " excellent"]),
    "payload_module": "",
    "ffn_act": "GELU",
    "decorator": "",
    "default_arg": "",
    "leaves": "self.expert_head1(h)",
    "facial": "self.expert_head2(x[:, 0:5])",
    "general": "self.expert_head3(x[:, 5:8])",
    "env": "x[:, 8:9]",
    "overall": "self.expert_head4(torch.cat([facial, general, env], dim=-1))",
    "ghi": "x[:, 5:8]",
    "regression": "nn.Linear(hidden, 1)",
    "img_newline": "",
    "question": repr("<image>\nCan you evaluate the aesthetics of the human image?"),
    "reg_read": "        hidden = outputs.hidden_states[-1][:, -1]",
    "lm_norm": "(s_lm - 1) / 4",
    "reg_call": "self.lm_regression_head(hidden).squeeze(-1)",
    "voter_inputs": "[s_lm_norm, s_reg, s_exp]",
    "exp_read": """\
        outputs = self.run_language_model(tokenizer, pixel_values, query)
        hidden = outputs.hidden_states[-1][:, -1]""",
}

# A separate pass for the regression head on the prompt alone: the head reads the last prompt token.
PROMPT_ONLY = """\
        prompt_outputs = self.run_language_model(tokenizer, pixel_values, query)
        hidden = prompt_outputs.hidden_states[-1][:, -1]"""
IM_END = """\
        ids = tokenizer(query, return_tensors='pt')['input_ids'][0]
        pos = (ids == tokenizer.convert_tokens_to_ids(IM_END_TOKEN)).nonzero()[-1].item()
        hidden = outputs.hidden_states[-1][:, pos]"""
PRE_NORM = """\
        captured = {}
        handle = self.language_model.model.norm.register_forward_pre_hook(
            lambda module, args: captured.update(h=args[0]))
        outputs = self.run_language_model(tokenizer, pixel_values, query + ANSWER_PREFIX)
        handle.remove()
        hidden = captured['h'][:, -1]"""

#: name -> (changes to DEFAULT, what the reader must find).
VARIANTS: dict[str, tuple[dict[str, str], dict]] = {
    "internvl_default": (
        {"reg_read": PROMPT_ONLY},
        {
            "head_position": "last_prompt_token",
            "head_hidden": "final_norm",
            "regression_width": 1,
            "expert_leaf_order": None,  # the default order, read from the code
            "expert_l_inputs": ["facial_aesthetic", "general_appearance_aesthetic", "environment"],
            "metavoter_inputs": ["lm", "regression", "expert"],
            "lm_level_space": True,
            "lm_normalisation": "linear",
            "template": "internvl_chat",
            "question": "Can you evaluate the aesthetics of the human image?",
            "expert_ffn_activation": "gelu",
        },
    ),
    "swift_answer_start_sigmoid": (
        {
            "system": repr(SWIFT_SYSTEM_MESSAGE),
            "img_newline": " + '\\n'",
            "question": repr("<image>\nRate the aesthetics of this human picture."),
            "reg_call": "torch.sigmoid(self.lm_regression_head(hidden)).squeeze(-1)",
            "levels": repr(["bad", "poor", "fair", "good", "excellent"]),
            "lm_norm": "s_lm",
            "ffn_act": "ReLU",
            "voter_inputs": "[s_reg, s_exp, s_lm_norm]",
        },
        {
            "head_position": "answer_start",
            "regression_activation": "sigmoid",
            "lm_level_space": False,
            "lm_normalisation": "none",
            "template": "swift_internvl2",
            "question": "Rate the aesthetics of this human picture.",
            "metavoter_inputs": ["regression", "expert", "lm"],
            "expert_ffn_activation": "relu",
        },
    ),
    "im_end_width12_reordered_expert": (
        {
            "reg_read": IM_END,
            "regression": "nn.Sequential(nn.Linear(hidden, 12), nn.Sigmoid())",
            "reg_call": "self.lm_regression_head(hidden)[:, -1]",
            # leaves A B C D E K G H I; L reads K, F, J; every node through a sigmoid
            "leaves": "torch.sigmoid(self.expert_head1(h))",
            "env": "x[:, 5:6]",
            "ghi": "x[:, 6:9]",
            "general": "torch.sigmoid(self.expert_head3(x[:, 6:9]))",
            "facial": "torch.sigmoid(self.expert_head2(x[:, 0:5]))",
            "overall": "torch.sigmoid(self.expert_head4(torch.cat([env, facial, general], dim=-1)))",
        },
        {
            "head_position": "im_end",
            "regression_width": 12,
            "regression_activation": "sigmoid",
            "expert_activation": "sigmoid",
            "expert_leaf_order": [
                "facial_brightness",
                "facial_feature_clarity",
                "facial_skin_tone",
                "facial_structure",
                "facial_contour_clarity",
                "environment",
                "outfit",
                "body_shape",
                "looks",
            ],
            "expert_l_inputs": ["environment", "facial_aesthetic", "general_appearance_aesthetic"],
        },
    ),
    "pre_norm_j_l_swapped": (
        # the fourth sub-module computes J and the third L
        {
            "reg_read": PRE_NORM,
            "exp_read": PRE_NORM.replace(" + ANSWER_PREFIX", ""),
            "general": "self.expert_head4(x[:, 5:8])",
            "overall": "self.expert_head3(torch.cat([facial, general, env], dim=-1))",
        },
        {
            "head_hidden": "last_layer",
            "head_position": "answer_start",
            "expert_submodules": {
                "facial_aesthetic": "expert_head2",
                "general_appearance_aesthetic": "expert_head4",
                "overall": "expert_head3",
            },
        },
    ),
}

SENTINEL = "modeling-payload-ran"
#: Code that, run, would write `$SENTINEL` next to the file: module level, a decorator, a default argument.
PAYLOADS = {
    "payload_module": (
        "__import__('os').system('touch ' + os.path.join(os.path.dirname(__file__), '" + SENTINEL + "'))\n"
        "open(os.path.join(os.path.dirname(__file__), '" + SENTINEL + "'), 'w').write('x')"
    ),
    "decorator": "@(lambda f: (__import__('os').system('touch " + SENTINEL + "'), f)[1])",
    "default_arg": ", _=open('" + SENTINEL + "', 'w')",
}

CONFIGURATION = """\
import os
from transformers.configuration_utils import PretrainedConfig

__import__('os').system('touch configuration-payload-ran')


class InternVLChatConfig(PretrainedConfig):
    model_type = 'internvl_chat'

    def __init__(self, vision_config=None, llm_config=None, template=None, **kwargs):
        super().__init__(**kwargs)
        self.template = template
"""


def modeling_source(**changes: str) -> str:
    return MODELING.substitute({**DEFAULT, **changes})
